"""The API's routers, one per resource: the gallery (and health), searches, items, evaluations, and the page."""
