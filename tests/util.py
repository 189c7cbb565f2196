"""Small helpers shared by tests."""


def numbers_in(obj):
    """Every int/float (not bool) inside nested dicts and lists, e.g. a metrics JSON."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from numbers_in(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from numbers_in(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj
