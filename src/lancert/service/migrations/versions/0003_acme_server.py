"""ACME server: EAB keys, accounts, orders, certificates, used nonces.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acme_eab_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("db_uuid", sa.String(length=128), nullable=False),
        sa.Column("hmac_key", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid"),
    )
    op.create_index("ix_acme_eab_keys_db_uuid", "acme_eab_keys", ["db_uuid"])
    op.create_table(
        "acme_accounts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("thumbprint", sa.String(length=64), nullable=False),
        sa.Column("jwk", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("contact", sa.Text(), nullable=False),
        sa.Column("db_uuid", sa.String(length=128), nullable=False),
        sa.Column("eab_kid", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_acme_accounts_thumbprint", "acme_accounts", ["thumbprint"], unique=True)
    op.create_table(
        "acme_orders",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("identifiers", sa.Text(), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.Column("certificate_id", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_acme_orders_account_id", "acme_orders", ["account_id"])
    op.create_table(
        "acme_certificates",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("db_uuid", sa.String(length=128), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("chain_pem", sa.Text(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_acme_certificates_serial", "acme_certificates", ["serial"], unique=True)
    op.create_table(
        "acme_used_nonces",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("minted", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_index("ix_acme_used_nonces_minted", "acme_used_nonces", ["minted"])


def downgrade() -> None:
    op.drop_index("ix_acme_used_nonces_minted", table_name="acme_used_nonces")
    op.drop_table("acme_used_nonces")
    op.drop_index("ix_acme_certificates_serial", table_name="acme_certificates")
    op.drop_table("acme_certificates")
    op.drop_index("ix_acme_orders_account_id", table_name="acme_orders")
    op.drop_table("acme_orders")
    op.drop_index("ix_acme_accounts_thumbprint", table_name="acme_accounts")
    op.drop_table("acme_accounts")
    op.drop_index("ix_acme_eab_keys_db_uuid", table_name="acme_eab_keys")
    op.drop_table("acme_eab_keys")
