"""The Pipeline API as we see it: `parse` (its JSON shapes, pure parsers over bytes), `client`
(the only aiohttp client: requests, error mapping), `listing` (paging through every pipeline)
and `secret` (the Service Key, masked wherever text leaves us)."""
