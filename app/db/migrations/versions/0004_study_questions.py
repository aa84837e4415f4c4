"""reader studies: a question set per study, and each answer's comment and features

Revision ID: 0004
Revises: 0003

``studies.questions`` holds which extra questions readers see (``{"comment": bool, "features":
bool}``; NULL: none). ``study_answers.comment`` is the reader's free text (at most 2,000
characters) and ``study_answers.features`` the list of features that gave a case away. Practice
cases need no column: they are cases with ``role = 'practice'``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("questions", sa.JSON(), nullable=True))
    with op.batch_alter_table("study_answers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("comment", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("features", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("study_answers", schema=None) as batch_op:
        batch_op.drop_column("features")
        batch_op.drop_column("comment")
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_column("questions")
