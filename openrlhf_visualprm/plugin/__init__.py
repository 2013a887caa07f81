"""OpenRLHF glue: launcher, worker hook, reward actor, experience hook, reward_func support.

The only package that imports OpenRLHF internals, so an OpenRLHF upgrade touches this folder.
"""
