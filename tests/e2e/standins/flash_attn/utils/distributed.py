"""Import-only stand-in (see ``flash_attn/__init__.py``)."""


def all_gather(*args, **kwargs):
    raise RuntimeError(
        "flash_attn.utils.distributed is an e2e test stand-in: this code path needs the real flash-attn"
    )
