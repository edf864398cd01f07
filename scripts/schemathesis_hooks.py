"""schemathesis hooks for scripts/schemathesis.sh.

The event long poll (`GET /v1/events?wait=S`) holds a request up to S seconds, at most 300,
while nothing happens: generated waits would spend the run's time waiting. A valid wait of 2
or more is cut to 1 second; every invalid one (negative, over 300, not a number) is sent as
generated, since it is answered at once.
"""

import schemathesis


def _shortened(value):
    try:
        seconds = int(str(value), 10)
    except ValueError:
        return value
    return 1 if 2 <= seconds <= 300 else value


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path != "/v1/events" or not case.query or "wait" not in case.query:
        return
    wait = case.query["wait"]
    if isinstance(wait, list):
        case.query["wait"] = [_shortened(w) for w in wait]
    else:
        case.query["wait"] = _shortened(wait)
