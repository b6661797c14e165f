"""Initial schema: eligibility registry, issued certificates, service state, rate limits, TXT records.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registered_databases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=128), nullable=False),
        sa.Column("code_hash", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subscription", sa.String(length=32), nullable=False),
        sa.Column("iot_box_line", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uuid"),
    )
    op.create_table(
        "issued_certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("db_uuid", sa.String(length=128), nullable=False),
        sa.Column("box_id", sa.String(length=64), nullable=True),
        sa.Column("box_label", sa.String(length=63), nullable=False),
        sa.Column("style", sa.String(length=16), nullable=False),
        sa.Column("issuer", sa.String(length=32), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("serial", name="uq_issued_certificates_serial"),
    )
    op.create_index("ix_issued_certificates_box_label", "issued_certificates", ["box_label"])
    op.create_table(
        "service_state",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "credential_failures",
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("window_start", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "subject", "window_start"),
    )
    op.create_table(
        "dns_txt_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dns_txt_records_name", "dns_txt_records", ["name"])


def downgrade() -> None:
    op.drop_index("ix_dns_txt_records_name", table_name="dns_txt_records")
    op.drop_table("dns_txt_records")
    op.drop_table("credential_failures")
    op.drop_table("service_state")
    op.drop_index("ix_issued_certificates_box_label", table_name="issued_certificates")
    op.drop_table("issued_certificates")
    op.drop_table("registered_databases")
