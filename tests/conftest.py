"""Shared pytest configuration."""

import sys
from pathlib import Path

# tests import their helpers (services, workflows) as top-level modules
sys.path.insert(0, str(Path(__file__).parent))
