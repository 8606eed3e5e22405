"""value chain feeds: exit reminders (a reminder kind "exit" and the relationship it is about)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 18:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade():
    # batch mode: SQLite rebuilds the table to change a check constraint; PostgreSQL alters in place
    with op.batch_alter_table('reminders', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_reminders_kind_valid'), type_='check')
        batch_op.create_check_constraint(op.f('ck_reminders_kind_valid'),
                                         "kind IN ('reply', 'escalation', 'manual', 'exit')")
        batch_op.add_column(sa.Column('relationship_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_reminders_relationship_id'), ['relationship_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_reminders_relationship_id_value_chain_relationships'),
                                    'value_chain_relationships', ['relationship_id'], ['id'], ondelete='CASCADE')


def downgrade():
    op.execute("DELETE FROM reminders WHERE kind = 'exit'")
    with op.batch_alter_table('reminders', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_reminders_relationship_id_value_chain_relationships'),
                                 type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_reminders_relationship_id'))
        batch_op.drop_column('relationship_id')
        batch_op.drop_constraint(op.f('ck_reminders_kind_valid'), type_='check')
        batch_op.create_check_constraint(op.f('ck_reminders_kind_valid'), "kind IN ('reply', 'escalation', 'manual')")
