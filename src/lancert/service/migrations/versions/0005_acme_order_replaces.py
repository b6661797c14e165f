"""The certificate an ACME order replaces (RFC 9773 ``replaces``), echoed in the order and checked once.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("acme_orders") as batch:
        batch.add_column(sa.Column("replaces", sa.String(length=256), nullable=True))
        batch.create_index("ix_acme_orders_replaces", ["replaces"])


def downgrade() -> None:
    with op.batch_alter_table("acme_orders") as batch:
        batch.drop_index("ix_acme_orders_replaces")
        batch.drop_column("replaces")
