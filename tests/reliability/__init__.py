"""Bad and hostile inputs, kills and concurrency: each case asserts the message, the exit code, no
traceback without --debug, and that nothing else on disk changed (issue 14)."""
