"""``smartlock console``: the monitoring centre's live map and alert desk in the browser."""
