"""`toolsync cron`: schedules, the crontab line, notifications."""
