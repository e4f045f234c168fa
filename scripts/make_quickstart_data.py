"""Generate the bundled quickstart data: three small phase files about a made-up codebase.

    python scripts/make_quickstart_data.py   # rewrites src/phased_cpt/quickstart/data/*.jsonl

The text is synthetic (templates filled deterministically from a fixed seed): a toy inventory
service's source files (phase 1), its commit history with diffs (phase 2) and pull requests with
reviews (phase 3). It is regular enough that a tiny random model visibly learns it in a minute.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "phased_cpt" / "quickstart" / "data"
ENTITIES = [
    "item",
    "order",
    "customer",
    "warehouse",
    "shipment",
    "supplier",
    "invoice",
    "payment",
    "category",
    "discount",
    "review",
    "return",
    "stock",
    "carrier",
    "address",
    "coupon",
]
FIELDS = [
    "name",
    "price",
    "quantity",
    "status",
    "created_at",
    "updated_at",
    "owner",
    "note",
    "weight",
    "code",
    "total",
    "currency",
    "region",
    "priority",
]
VERBS = ["create", "update", "delete", "list", "find", "validate", "archive", "restore"]
AUTHORS = ["ada", "linus", "grace", "guido", "barbara", "ken", "margaret", "dennis"]


def model_file(rng: random.Random, entity: str) -> str:
    fields = rng.sample(FIELDS, k=rng.randint(3, 7))
    cls = entity.capitalize()
    lines = [
        f'"""The {entity} model and its repository."""',
        "",
        "from dataclasses import dataclass, field",
        "from typing import Optional",
        "",
        "",
        "@dataclass",
        f"class {cls}:",
        f'    """One {entity} as stored in the database."""',
        "",
        "    id: int",
    ]
    lines += [f"    {f}: Optional[str] = None" for f in fields]
    lines += [
        "",
        "",
        f"class {cls}Repository:",
        f'    """Loads and stores {entity} records."""',
        "",
        "    def __init__(self, db):",
        "        self.db = db",
        "",
    ]
    for verb in rng.sample(VERBS, k=rng.randint(3, len(VERBS))):
        lines += [
            f"    def {verb}_{entity}(self, {entity}_id: int) -> Optional[{cls}]:",
            f'        """{verb.capitalize()} one {entity} by id."""',
            f'        row = self.db.fetch_one("{entity}s", {entity}_id)',
            "        if row is None:",
            "            return None",
            f"        return {cls}(**row)",
            "",
        ]
    return "\n".join(lines)


def service_file(rng: random.Random, entity: str) -> str:
    cls = entity.capitalize()
    lines = [
        f'"""HTTP handlers for {entity} endpoints."""',
        "",
        f"from app.models.{entity} import {cls}Repository",
        "from app.http import json_response, not_found",
        "",
    ]
    for verb in rng.sample(VERBS, k=4):
        lines += [
            "",
            f"def handle_{verb}_{entity}(request, db):",
            f'    """Handle {verb.upper()} /{entity}s/<id>."""',
            f"    repo = {cls}Repository(db)",
            f'    result = repo.{verb}_{entity}(int(request.params["id"]))',
            "    if result is None:",
            f'        return not_found("{entity}")',
            "    return json_response(result)",
        ]
    return "\n".join(lines) + "\n"


def diff_for(rng: random.Random, entity: str) -> tuple[str, str]:
    field_old, field_new = rng.sample(FIELDS, k=2)
    verb = rng.choice(VERBS)
    path = f"app/models/{entity}.py"
    diff = (
        f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -8,7 +8,7 @@ class {entity.capitalize()}:\n"
        f"     id: int\n-    {field_old}: Optional[str] = None\n+    {field_new}: Optional[str] = None\n"
        f"     def {verb}_{entity}(self, {entity}_id: int):\n"
    )
    subject = rng.choice(
        [
            f"Rename {field_old} to {field_new} on {entity}",
            f"Fix {verb} for {entity} when {field_old} is missing",
            f"Add {field_new} to {entity} model",
        ]
    )
    return subject, diff


def main() -> None:
    rng = random.Random(1234)
    OUT.mkdir(parents=True, exist_ok=True)
    phase1 = []
    for entity in ENTITIES:
        phase1.append(
            {
                "training_content": f"# path: app/models/{entity}.py\n{model_file(rng, entity)}",
                "path": f"app/models/{entity}.py",
            }
        )
        phase1.append(
            {
                "training_content": f"# path: app/handlers/{entity}.py\n{service_file(rng, entity)}",
                "path": f"app/handlers/{entity}.py",
            }
        )
    phase2 = []
    for number in range(140):
        entity = rng.choice(ENTITIES)
        subject, diff = diff_for(rng, entity)
        author = rng.choice(AUTHORS)
        text = (
            f"commit {number:04x}\nAuthor: {author}\nDate: 2024-{1 + number % 12:02d}-{1 + number % 28:02d}\n\n"
            f"    {subject}\n\n    Touches the {entity} model only.\n\n{diff}"
        )
        phase2.append({"training_content": text, "commit": f"{number:04x}"})
    phase3 = []
    for number in range(1, 61):
        entity = rng.choice(ENTITIES)
        subject, diff = diff_for(rng, entity)
        reviewer, author = rng.sample(AUTHORS, k=2)
        outcome = rng.choice(["merged", "merged", "closed without merging"])
        comments = "\n".join(
            f"Review by {reviewer} on app/models/{entity}.py: "
            + rng.choice(
                [
                    "please add a test for this",
                    "looks good to me",
                    "rename this field consistently",
                    f"does {rng.choice(VERBS)}_{entity} still work?",
                ]
            )
            for _ in range(rng.randint(1, 4))
        )
        text = (
            f"Pull request #{number}: {subject}\nAuthor: {author}\n\nDescription:\n{subject} so that the {entity} "
            f"records stay consistent.\n\nDiff:\n{diff}\nReviews:\n{comments}\n\nOutcome: {outcome}\n"
        )
        phase3.append({"training_content": text, "pr": number})
    for name, records in [("phase1_foundation", phase1), ("phase2_evolution", phase2), ("phase3_pr_mastery", phase3)]:
        with open(OUT / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
        print(name, len(records), (OUT / f"{name}.jsonl").stat().st_size, "bytes")


if __name__ == "__main__":
    main()
