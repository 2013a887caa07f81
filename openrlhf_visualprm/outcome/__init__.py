"""The outcome reward: the response's final answer checked against the label's ground truth."""
