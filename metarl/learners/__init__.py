"""Learners: how a model adapts to a task and how it is meta-trained."""
