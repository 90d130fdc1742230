"""Load tests and the media helpers shared with the test suite."""
