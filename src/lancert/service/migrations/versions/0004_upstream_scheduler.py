"""Several upstream CAs and their limits: what each CA's limits have spent, the last upstream certificate
of each name set, and why earlier CAs were skipped for a name's certificate.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upstream_spend",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ca", sa.String(length=255), nullable=False),
        sa.Column("counter", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=253), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_upstream_spend_counter", "upstream_spend", ["ca", "counter", "key", "at"])
    op.create_table(
        "upstream_certificates",
        sa.Column("names_key", sa.String(length=64), nullable=False),
        sa.Column("ca", sa.String(length=255), nullable=False),
        sa.Column("not_after", sa.Float(), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("window_end", sa.Float(), nullable=False),
        sa.Column("ari", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("names_key"),
    )
    with op.batch_alter_table("certificate_orders") as batch:
        batch.add_column(sa.Column("skipped", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("certificate_orders") as batch:
        batch.drop_column("skipped")
    op.drop_table("upstream_certificates")
    op.drop_index("ix_upstream_spend_counter", table_name="upstream_spend")
    op.drop_table("upstream_spend")
