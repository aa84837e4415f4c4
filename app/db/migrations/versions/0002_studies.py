"""studies tables: studies, arms, cases, readers, readings, answers

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column]:
    return [sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)]


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_message", sa.String(length=300), nullable=False),
        sa.Column("positive_class", sa.String(length=16), nullable=False),
        sa.Column("allow_unsure", sa.Boolean(), nullable=False),
        sa.Column("confidence_scale", sa.Boolean(), nullable=False),
        sa.Column("allow_change", sa.Boolean(), nullable=False),
        sa.Column("repeats", sa.Integer(), nullable=False),
        sa.Column("click_synthetic", sa.Boolean(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("design", sa.JSON(), nullable=False),
        sa.Column("grid", sa.JSON(), nullable=True),
        *_timestamps(),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_studies_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_studies_status"), ["status"], unique=False)

    op.create_table(
        "study_arms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("truth", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_id", "position", name="uq_study_arms_position"),
    )
    with op.batch_alter_table("study_arms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_study_arms_study_id"), ["study_id"], unique=False)

    op.create_table(
        "study_readers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("order_seed", sa.Integer(), nullable=False),
        sa.Column("experience_years", sa.Integer(), nullable=True),
        sa.Column("specialty", sa.String(length=100), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("invited_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("profile_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_id", "label", name="uq_study_readers_label"),
        sa.UniqueConstraint("token_hash", name="uq_study_readers_token_hash"),
    )
    with op.batch_alter_table("study_readers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_study_readers_study_id"), ["study_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_study_readers_user_id"), ["user_id"], unique=False)

    op.create_table(
        "study_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("arm_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("caption", sa.String(length=200), nullable=False),
        sa.Column("example_token", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("label_id", sa.Integer(), nullable=True),
        sa.Column("source_image_id", sa.Integer(), nullable=True),
        sa.Column("mask_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("centre_mm", sa.JSON(), nullable=True),
        sa.Column("served_path", sa.String(length=300), nullable=True),
        sa.Column("served_bytes", sa.Integer(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(["arm_id"], ["study_arms.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_id"], ["volumes.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["label_id"], ["volumes.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["mask_id"], ["volumes.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["source_image_id"], ["volumes.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("example_token", name="uq_study_cases_example_token"),
    )
    with op.batch_alter_table("study_cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_study_cases_arm_id"), ["arm_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_study_cases_study_id"), ["study_id"], unique=False)

    op.create_table(
        "study_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("reading", sa.Integer(), nullable=False),
        sa.Column("answer", sa.String(length=16), nullable=False),
        sa.Column("confidence", sa.Integer(), nullable=True),
        sa.Column("click", sa.JSON(), nullable=True),
        sa.Column("time_ms", sa.Integer(), nullable=False),
        sa.Column("changes", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["study_cases.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["reader_id"], ["study_readers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reader_id", "case_id", "reading", name="uq_study_answers_reading"),
    )
    with op.batch_alter_table("study_answers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_study_answers_case_id"), ["case_id"], unique=False)

    op.create_table(
        "study_readings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("reading", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["study_cases.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["reader_id"], ["study_readers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reader_id", "case_id", "reading", name="uq_study_readings_case"),
        sa.UniqueConstraint("reader_id", "position", name="uq_study_readings_position"),
        sa.UniqueConstraint("token", name="uq_study_readings_token"),
    )


def downgrade() -> None:
    op.drop_table("study_readings")
    with op.batch_alter_table("study_answers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_answers_case_id"))
    op.drop_table("study_answers")
    with op.batch_alter_table("study_cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_cases_study_id"))
        batch_op.drop_index(batch_op.f("ix_study_cases_arm_id"))
    op.drop_table("study_cases")
    with op.batch_alter_table("study_readers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_readers_user_id"))
        batch_op.drop_index(batch_op.f("ix_study_readers_study_id"))
    op.drop_table("study_readers")
    with op.batch_alter_table("study_arms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_arms_study_id"))
    op.drop_table("study_arms")
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_studies_status"))
        batch_op.drop_index(batch_op.f("ix_studies_owner_id"))
    op.drop_table("studies")
