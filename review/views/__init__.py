"""The reviewer console: thin views over review.selectors (reads) and review.services
(actions). Every action is a plain form POST that htmx speeds up; permissions are
checked in the views, per namespace, never in templates."""
