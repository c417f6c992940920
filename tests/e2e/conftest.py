"""Fixtures of the end-to-end suite: one platform (four OS processes) and one SMTP
server shared by every scenario of the run (starting four processes is most of a
scenario's cost); each scenario uses its own accounts and moves the one clock forward."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from tests.e2e.desk import check_every_mail
from tests.support.platform import Platform
from tests.support.smtp import MailServer

# Scenario dates lie in 2027, after the machine's wall clock: a service's manual clock
# starts at the wall clock, so dates after it keep every clock moving forward only.


@pytest.fixture(scope="session")
def mail() -> Iterator[MailServer]:
    """A real SMTP server; notify-svc sends every email to it."""
    with MailServer() as server:
        yield server


# Package scope: the platform stops when the e2e tests are done, rather than idling
# beside the rest of the suite (four processes on both backends, about a fifth of a core).
@pytest.fixture(scope="package")
def platform(tmp_path_factory: pytest.TempPathFactory, mail: MailServer) -> Iterator[Platform]:
    """The four services as separate processes on the active backends, manual clock."""
    with Platform(
        tmp_path_factory.mktemp("platform"), env={"DUNNING_SMTP_URL": mail.url}
    ) as running:
        yield running
        # After every scenario: exactly one mail per notice, over the whole run.
        check_every_mail(running, mail)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach every service's log tail to a failed test's report."""
    report = yield
    if report.failed and call.when in ("call", "setup"):
        running = getattr(item, "funcargs", {}).get("platform")
        if isinstance(running, Platform):
            for section in running.logs():
                report.sections.append(("platform logs", section))
    return report
