"""Cost drill-down: organisation → project → user → job. Each table row is a link to the next level
(same dashboard, the clicked value set as a variable, time range kept); then by instance type and
market, storage and egress, idle capacity, this period against the last, and what to change to spend
less (the recommend collector's savings)."""

from vocabulary import (
    COUNT,
    DATASOURCE,
    DOLLARS,
    DOLLARS_PER_HOUR,
    HALF,
    RATIO,
    SIXTH,
    THIRD,
    WASTE_SHARE,
    Board,
    Link,
    Query,
    Row,
    Variable,
    pie,
    stat,
    table,
    timeseries,
)

# The cost engine's counters (docs/metrics.md, "cost" collector): every dollar once per view.
ALLOCATION = "raylens_cost_allocation_dollars_total"  # by user, project, team, workload, cost_kind
ALLOCATION_RATE = "raylens_cost_allocation_dollars_per_second"
JOB = "raylens_cost_job_dollars_total"  # by job_id, submission_id, user, project, team
NODE = "raylens_cost_node_dollars_total"  # by node_id, instance_type, market, cost_kind
NODE_RATE = "raylens_cost_node_dollars_per_second"
IDLE = 'project="__idle__"'  # what no task or actor held
# The recommend collector (docs/reports.md): savings per recommendation, US dollars per hour; 730 h a month.
SAVINGS = "raylens_recommendation_savings_dollars_per_hour"
RECOMMENDATION = "raylens_recommendation_info"

PROJECT = Variable("project", "Project", f"label_values({ALLOCATION}, project)")
USER = Variable("user", "User", f'label_values({ALLOCATION}{{project=~"$project"}}, user)')
JOB_ID = Variable("job", "Ray job", f'label_values({JOB}{{project=~"$project",user=~"$user"}}, job_id)')
WHO = 'project=~"$project",user=~"$user"'
CARRY = ("datasource", "project", "user", "job")


def spent(metric: str, by: str, selector: str = WHO, offset: str = "") -> str:
    return f"sum by ({by}) (increase({metric}{{{selector}}}[$__range]{offset}))"


dashboard = Board(
    key="cost",
    description="Where the money goes, from the raylens cost engine's spend counters: by project, user and "
    "Ray job (click a row to drill down), by instance type and market, storage and egress, idle capacity, "
    "and this period against the previous one. All amounts are US dollars.",
    variables=[DATASOURCE, PROJECT, USER, JOB_ID],
    time_from="now-7d",
    rows=[
        Row(
            "Organisation",
            [
                stat(
                    "Spend in range",
                    "How much did the selected projects and users cost over the time range?",
                    # Instant: a range query would re-read the whole range at every step.
                    Query(f"sum(increase({ALLOCATION}{{{WHO}}}[$__range]))", instant=True),
                    DOLLARS,
                    decimals=2,
                    width=SIXTH,
                ),
                stat(
                    "Spend rate now",
                    "What do the selected projects and users cost per hour right now?",
                    Query(f"sum({ALLOCATION_RATE}{{{WHO}}}) * 3600"),
                    DOLLARS_PER_HOUR,
                    decimals=2,
                    sparkline=True,
                    width=SIXTH,
                ),
                stat(
                    "Change against previous range",
                    "Is spend up or down against the same length of time just before?",
                    Query(
                        f"sum(increase({ALLOCATION}{{{WHO}}}[$__range]))"
                        f" / sum(increase({ALLOCATION}{{{WHO}}}[$__range] offset $__range)) - 1",
                        instant=True,
                    ),
                    RATIO,
                    decimals=1,
                    width=SIXTH,
                ),
                stat(
                    "Idle share of spend",
                    "What share of the cluster's spend pays for capacity no task or actor holds?",
                    Query(f"sum({ALLOCATION_RATE}{{{IDLE}}}) / sum({ALLOCATION_RATE})"),
                    RATIO,
                    thresholds=WASTE_SHARE,
                    sparkline=True,
                    width=SIXTH,
                ),
                stat(
                    "Unpriced nodes",
                    "Are there nodes raylens cannot price (their cost is missing from every total)?",
                    Query("sum(raylens_cost_unpriced_nodes)"),
                    COUNT,
                    thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}],
                    color_background=True,
                    width=SIXTH,
                ),
                stat(
                    "Jobs with spend in range",
                    "How many Ray jobs of the selection cost anything in this range?",
                    Query(
                        f'count(sum by (job_id) (increase({JOB}{{{WHO},job_id=~"$job"}}[$__range])) > 0)', instant=True
                    ),
                    COUNT,
                    width=SIXTH,
                ),
                timeseries(
                    "Spend rate by project",
                    "Which projects drive the spend, and when (idle capacity shows as __idle__)?",
                    Query(f"sum by (project) ({ALLOCATION_RATE}{{{WHO}}}) * 3600", "{{project}}"),
                    DOLLARS_PER_HOUR,
                    stack=True,
                    width=HALF,
                ),
                table(
                    "Spend by project",
                    "Which project spent the most in this range? Click a project to see its users.",
                    Query(spent(ALLOCATION, "project")),
                    DOLLARS,
                    decimals=2,
                    columns={"project": "Project", "Value": "Spend"},
                    sort_by="Spend",
                    cell_links=[
                        Link(
                            "Users of ${__data.fields.Project}", "cost", CARRY, {"project": "${__data.fields.Project}"}
                        )
                    ],
                    width=HALF,
                ),
                table(
                    "Spend by user",
                    "Within the selected projects, who spent what? Click a user to see their jobs.",
                    Query(spent(ALLOCATION, "project, user")),
                    DOLLARS,
                    decimals=2,
                    columns={"project": "Project", "user": "User", "Value": "Spend"},
                    sort_by="Spend",
                    cell_links=[
                        Link("Jobs of ${__data.fields.User}", "cost", CARRY, {"user": "${__data.fields.User}"})
                    ],
                    width=HALF,
                ),
                table(
                    "Spend by Ray job",
                    "Which Ray jobs of the selected users cost the most? Click a job to select it.",
                    Query(spent(JOB, "project, user, job_id, submission_id", f'{WHO},job_id=~"$job"')),
                    DOLLARS,
                    decimals=2,
                    columns={
                        "project": "Project",
                        "user": "User",
                        "job_id": "Job",
                        "submission_id": "Submission",
                        "Value": "Spend",
                    },
                    sort_by="Spend",
                    cell_links=[
                        Link("Select job ${__data.fields.Job}", "cost", CARRY, {"job": "${__data.fields.Job}"}),
                        Link(
                            "Logs of job ${__data.fields.Job}",
                            "logs_events",
                            ("datasource",),
                            {"job_id": "${__data.fields.Job}"},
                        ),
                    ],
                    width=HALF,
                ),
            ],
        ),
        Row(
            "What the money buys",
            [
                pie(
                    "Spend by instance type",
                    "Which machine types cost the most (whole cluster)?",
                    Query(spent(NODE, "instance_type", ""), "{{instance_type}}", instant=True),
                    DOLLARS,
                    decimals=2,
                ),
                pie(
                    "Spend by market",
                    "How much goes to on-demand versus spot capacity (whole cluster)?",
                    Query(spent(NODE, "market", ""), "{{market}}", instant=True),
                    DOLLARS,
                    decimals=2,
                ),
                pie(
                    "Spend by kind",
                    "How much of the selection's spend is compute, storage (volumes, spill) and network egress?",
                    Query(spent(ALLOCATION, "cost_kind"), "{{cost_kind}}", instant=True),
                    DOLLARS,
                    decimals=2,
                ),
                timeseries(
                    "Storage and egress spend rate",
                    "What do disks, spilled objects and data leaving the cluster cost per hour?",
                    Query(f'sum by (cost_kind) ({NODE_RATE}{{cost_kind=~"storage|network"}}) * 3600', "{{cost_kind}}"),
                    DOLLARS_PER_HOUR,
                    width=HALF,
                ),
                timeseries(
                    "Idle capacity spend rate",
                    "What do we pay per hour for capacity no task or actor holds?",
                    Query(f"sum by (cost_kind) ({ALLOCATION_RATE}{{{IDLE}}}) * 3600", "{{cost_kind}}"),
                    DOLLARS_PER_HOUR,
                    stack=True,
                    width=HALF,
                ),
            ],
        ),
        Row(
            "This period against the last",
            [
                timeseries(
                    "Spend per hour: this range and the one before",
                    "Is spend running above the same time one range earlier?",
                    [
                        Query(f"sum(rate({ALLOCATION}{{{WHO}}}[$__rate_interval])) * 3600", "this range"),
                        Query(
                            f"sum(rate({ALLOCATION}{{{WHO}}}[$__rate_interval] offset $__range)) * 3600",
                            "one range earlier",
                        ),
                    ],
                    DOLLARS_PER_HOUR,
                    width=HALF,
                ),
                table(
                    "Projects: this range against the previous",
                    "Which projects' spend grew or shrank most against the previous range?",
                    [
                        Query(spent(ALLOCATION, "project")),
                        Query(spent(ALLOCATION, "project", offset=" offset $__range")),
                    ],
                    DOLLARS,
                    decimals=2,
                    columns={"project": "Project", "Value #A": "This range", "Value #B": "Previous range"},
                    sort_by="This range",
                    width=HALF,
                ),
            ],
        ),
        Row(
            "Savings",
            [
                stat(
                    "Potential savings per month",
                    "How much less could we spend by acting on the recommendations (the largest one per target, "
                    "since right-sizing and spot on one node are alternatives)?",
                    Query(f"sum(max by (target) ({SAVINGS})) * 730"),
                    DOLLARS,
                    decimals=0,
                    sparkline=True,
                    width=SIXTH,
                ),
                stat(
                    "Recommendations",
                    "How many recommendations are there now (shown: the top ones per kind)?",
                    Query(f"count({SAVINGS})"),
                    COUNT,
                    width=SIXTH,
                ),
                pie(
                    "Savings per month by kind",
                    "Which kind of change saves most: idle GPUs, right-sizing, spot, idle clusters, Serve replicas?",
                    Query(f"sum by (kind) ({SAVINGS}) * 730", "{{kind}}"),
                    DOLLARS,
                    decimals=0,
                ),
                timeseries(
                    "Potential savings over time",
                    "Are the savings on the table growing or shrinking, by kind?",
                    Query(f"sum by (kind) ({SAVINGS}) * 730", "{{kind}}"),
                    DOLLARS,
                    stack=True,
                    width=THIRD,
                ),
                table(
                    "What to change",
                    "Which changes save the most, and what exactly to do? `raylens recommend --evidence` shows the "
                    "PromQL behind each figure.",
                    Query(
                        f"sort_desc({SAVINGS} * 730 * on (job, instance, kind, target) group_left (summary, action) "
                        f"{RECOMMENDATION})"
                    ),
                    DOLLARS,
                    decimals=0,
                    columns={
                        "kind": "Kind",
                        "target": "Target",
                        "summary": "Why",
                        "action": "What to do",
                        "Value": "Saves per month",
                    },
                    hide=["job", "instance", "target_type"],
                    sort_by="Saves per month",
                ),
            ],
        ),
    ],
)
