"""timeline links: the interaction and cycle move a sent letter made, the move a logged response made

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-05 07:15:00

The links live on `letters` and `engagement_events`, which carry no search triggers, so SQLite's
batch mode (a rebuilt table) is safe for them; `interactions` (migration 0023's triggers) is not
altered.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0031'
down_revision = '0030'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('letters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('interaction_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('event_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_letters_interaction_id'), ['interaction_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_letters_event_id'), ['event_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_letters_interaction_id_interactions'), 'interactions',
                                    ['interaction_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_letters_event_id_engagement_events'), 'engagement_events',
                                    ['event_id'], ['id'], ondelete='SET NULL')
    with op.batch_alter_table('engagement_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('interaction_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_engagement_events_interaction_id'), ['interaction_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_engagement_events_interaction_id_interactions'), 'interactions',
                                    ['interaction_id'], ['id'], ondelete='SET NULL')
    # Link what earlier versions recorded: a sent letter wrote an interaction of kind 'letter' with
    # its subject on its sent date and (initial or follow-up letter) a move noted with its subject.
    op.execute(
        "UPDATE letters SET interaction_id = (SELECT MIN(i.id) FROM interactions i "
        "WHERE i.engagement_id = letters.engagement_id AND i.kind = 'letter' "
        "AND i.occurred_on = letters.sent_on AND i.subject = letters.subject) "
        "WHERE status = 'sent'")
    op.execute(
        "UPDATE letters SET event_id = (SELECT MIN(e.id) FROM engagement_events e "
        "WHERE e.engagement_id = letters.engagement_id AND e.kind IN ('stage', 'escalation') "
        "AND e.occurred_on = letters.sent_on "
        "AND e.note IN ('Initial letter sent: ' || letters.subject, 'Follow-up letter sent: ' || letters.subject)) "
        "WHERE status = 'sent'")


def downgrade():
    with op.batch_alter_table('engagement_events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_engagement_events_interaction_id_interactions'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_engagement_events_interaction_id'))
        batch_op.drop_column('interaction_id')
    with op.batch_alter_table('letters', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_letters_event_id_engagement_events'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_letters_interaction_id_interactions'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_letters_event_id'))
        batch_op.drop_index(batch_op.f('ix_letters_interaction_id'))
        batch_op.drop_column('event_id')
        batch_op.drop_column('interaction_id')
