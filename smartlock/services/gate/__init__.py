"""The gate-side client: publishes arrivals, shows verdicts, falls back to manual inspection."""
