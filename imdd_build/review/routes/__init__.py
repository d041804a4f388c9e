"""The review app's routes, as FastAPI routers `server.create_app` includes (in this order):
`pages` (login, logout, the review and adjudication pages, guidelines, static files), `items` (the
reviewer's API: next item, an item, its image and mask, decisions, checks, undo, history) and
`admin` (stats, adjudication)."""
