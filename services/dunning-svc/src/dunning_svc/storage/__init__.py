"""dunning-svc's tables and the set-based queries on them: every SQL statement of the
service (``tables``, ``state``, ``accounts``, ``timeline``, ``policies``).

One row per account holds what the worklist filters and sorts on as columns (stage,
segment, overdue total, oldest due date, pause, ``next_action_at``) and the rest of
the projection as compact JSON text (``state``), so a chunk of events loads its
accounts in one query and writes them back in one statement. ``next_action_at`` is
indexed: the scheduler reads only the accounts that are due, never all of them.
The timeline is append-only; policy versions are rows per tenant and segment.
"""

from __future__ import annotations

from dunning_svc.storage.accounts import (
    WorklistQuery as WorklistQuery,
)
from dunning_svc.storage.accounts import (
    accounts_by_stage as accounts_by_stage,
)
from dunning_svc.storage.accounts import (
    due_accounts as due_accounts,
)
from dunning_svc.storage.accounts import (
    each_account as each_account,
)
from dunning_svc.storage.accounts import (
    last_traceparents as last_traceparents,
)
from dunning_svc.storage.accounts import (
    load_account as load_account,
)
from dunning_svc.storage.accounts import (
    load_accounts as load_accounts,
)
from dunning_svc.storage.accounts import (
    save_accounts as save_accounts,
)
from dunning_svc.storage.accounts import (
    worklist as worklist,
)
from dunning_svc.storage.policies import (
    add_policy as add_policy,
)
from dunning_svc.storage.policies import (
    latest_versions as latest_versions,
)
from dunning_svc.storage.policies import (
    newest_policy as newest_policy,
)
from dunning_svc.storage.policies import (
    policy_bodies as policy_bodies,
)
from dunning_svc.storage.policies import (
    policy_segments as policy_segments,
)
from dunning_svc.storage.policies import (
    policy_versions as policy_versions,
)
from dunning_svc.storage.policies import (
    repin_running as repin_running,
)
from dunning_svc.storage.policies import (
    wake_idle as wake_idle,
)
from dunning_svc.storage.state import (
    columns_of as columns_of,
)
from dunning_svc.storage.state import (
    dumps as dumps,
)
from dunning_svc.storage.state import (
    state_of as state_of,
)
from dunning_svc.storage.state import (
    to_account as to_account,
)
from dunning_svc.storage.tables import (
    E4 as E4,
)
from dunning_svc.storage.tables import (
    WRITTEN_COLUMNS as WRITTEN_COLUMNS,
)
from dunning_svc.storage.tables import (
    Key as Key,
)
from dunning_svc.storage.tables import (
    accounts as accounts,
)
from dunning_svc.storage.tables import (
    metadata as metadata,
)
from dunning_svc.storage.tables import (
    policies as policies,
)
from dunning_svc.storage.tables import (
    timeline as timeline,
)
from dunning_svc.storage.timeline import (
    TimelineRecord as TimelineRecord,
)
from dunning_svc.storage.timeline import (
    append_timeline as append_timeline,
)
from dunning_svc.storage.timeline import (
    timeline_entries as timeline_entries,
)
from dunning_svc.storage.timeline import (
    timeline_row as timeline_row,
)
