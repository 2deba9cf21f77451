"""Where cvops runs and keeps state: a checkout's set-up, the team stack, shared state, Ray, retention."""
