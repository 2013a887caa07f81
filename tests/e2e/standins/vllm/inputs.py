def TokensPrompt(**kwargs):  # noqa: N802 - mirrors vLLM's TypedDict constructor
    return dict(kwargs)
