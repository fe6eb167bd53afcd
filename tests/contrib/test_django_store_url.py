"""`celery_durable.contrib.django.store_url`: a DATABASES entry as the store's URL."""

from __future__ import annotations

import os

import pytest

from celery_durable.contrib.django import DjangoDatabaseError, store_url
from celery_durable.transactions import same_database


def test_postgresql_keeps_credentials_and_libpq_options() -> None:
    url = store_url({"ENGINE": "django.db.backends.postgresql", "NAME": "shop", "USER": "web",
                     "PASSWORD": "s3cr@t", "HOST": "db.internal", "PORT": "6432",
                     "OPTIONS": {"sslmode": "require", "pool": True}})
    assert url == "postgresql+psycopg://web:s3cr%40t@db.internal:6432/shop?sslmode=require"


def test_mysql_and_postgis() -> None:
    assert store_url({"ENGINE": "django.db.backends.mysql", "NAME": "shop", "USER": "root",
                      "OPTIONS": {"charset": "utf8mb4", "init_command": "SET x=1"}}) \
        == "mysql+pymysql://root@/shop?charset=utf8mb4"
    assert store_url({"ENGINE": "django.contrib.gis.db.backends.postgis", "NAME": "geo"}) \
        == "postgresql+psycopg:///geo"


def test_sqlite_gives_an_absolute_path(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "db.sqlite3")
    assert store_url({"ENGINE": "django.db.backends.sqlite3", "NAME": path}) == \
        f"sqlite:///{path}"
    with pytest.raises(DjangoDatabaseError, match="other processes cannot open"):
        store_url({"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"})


def test_an_engine_the_store_cannot_use_is_refused() -> None:
    with pytest.raises(DjangoDatabaseError, match="ENGINE 'django.db.backends.oracle', which "
                                                  "the store cannot use"):
        store_url({"ENGINE": "django.db.backends.oracle", "NAME": "x"})


def test_same_database_ignores_drivers_users_and_default_ports() -> None:
    assert same_database("postgresql+psycopg://a@localhost/shop",
                         "postgresql://b:pw@localhost:5432/shop")
    assert same_database("mariadb+pymysql://root@h/shop", "mysql+pymysql://root@h:3306/shop")
    assert same_database("postgresql://127.0.0.1/shop", "postgresql://localhost/shop")
    assert not same_database("postgresql://h/shop", "postgresql://h/other")
    assert not same_database("postgresql://h/shop", "postgresql://other-host/shop")
    assert not same_database("sqlite:///a.db", "postgresql://h/a.db")
    assert same_database("sqlite:///x/../a.db", "sqlite:///a.db")
    assert not same_database("sqlite://", "sqlite://")  # two in-memory databases
