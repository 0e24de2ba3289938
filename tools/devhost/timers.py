"""Timer schedules as the host reads them: six-field NCRONTAB (`{second} {minute} {hour} {day} {month} {dow}`,
UTC) through croniter, or a TimeSpan `hh:mm:ss` (App Service plans)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from croniter import croniter

_TIMESPAN = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})$")


class Schedule:
    def __init__(self, text: str) -> None:
        self.text = text.strip()
        match = _TIMESPAN.match(self.text)
        self.interval: timedelta | None = None
        if match:
            h, m, s = (int(g) for g in match.groups())
            self.interval = timedelta(hours=h, minutes=m, seconds=s)
            if self.interval <= timedelta(0):
                raise ValueError("a TimeSpan schedule must be longer than zero")
            return
        fields = self.text.split()
        if len(fields) != 6:
            raise ValueError(f"NCRONTAB needs 6 fields ({{second}} {{minute}} {{hour}} {{day}} {{month}} "
                             f"{{day-of-week}}), got {len(fields)}")
        if not croniter.is_valid(self.text, second_at_beginning=True):
            raise ValueError("not a valid NCRONTAB expression")

    def next_after(self, moment: datetime) -> datetime:
        if self.interval is not None:
            return moment + self.interval
        result: datetime = croniter(self.text, moment, second_at_beginning=True).get_next(datetime)
        return result


def parse_schedule(text: str) -> Schedule:
    return Schedule(text)
