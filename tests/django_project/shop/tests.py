"""``manage.py test shop``: the test environment inside Django's ``TestCase``, whose transaction
never commits: an orchestration scheduled there starts within ``captureOnCommitCallbacks``."""

from django.test import TestCase

from celery_durable.testing import DurableTestEnv
from shop.tasks import fulfil, ship


class FulfilTests(TestCase):
    def setUp(self):
        self.env = DurableTestEnv()
        self.addCleanup(self.env.close)
        self.env.mock_activity(ship, returns="mocked")

    def test_it_starts_when_the_test_transaction_commits(self):
        with self.captureOnCommitCallbacks(execute=True):
            instance_id = self.env.schedule_new_orchestration(fulfil, input=1)
            self.assertIsNone(self.env.get_orchestration_state(instance_id))
        state = self.env.wait_for_orchestration_completion(instance_id)
        self.assertEqual(state.output, "mocked")

    def test_without_a_commit_nothing_starts(self):
        instance_id = self.env.schedule_new_orchestration(fulfil, input=2)
        self.assertIsNone(self.env.get_orchestration_state(instance_id))
