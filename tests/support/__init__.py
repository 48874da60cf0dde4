"""Helpers of the tests: tiny runs and tasks (`tiny_run`, `tiny_tasks`), generated image
folders and label tables (`gm_folders`), the processes of the multi-process tests
(`multihost_job`)."""
