"""The campaign console: server-rendered pages to author engagements and follow campaigns."""
