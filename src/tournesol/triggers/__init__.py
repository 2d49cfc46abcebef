"""Event triggers and multi-step journeys: definitions (YAML), the pure step function, and
(later) the instances' storage, the worker and the commands."""
