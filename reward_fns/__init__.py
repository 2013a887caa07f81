"""Drop-in ``reward_func`` files for ``--reward.remote_url FILE`` (see each file)."""
