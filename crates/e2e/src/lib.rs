//! No library: this package holds the end-to-end tests in `tests/`, which run the generator, the
//! aggregator and the API in one process against the services `scripts/services.sh` starts.
