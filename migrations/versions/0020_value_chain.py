"""value chain: disclosed maps, relationships and their status changes (issue 16)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 14:34:27.707637

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade():

    op.create_table('value_chain_maps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('company_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('source_kind', sa.String(length=16), nullable=False),
    sa.Column('source_ref', sa.String(length=500), nullable=False),
    sa.Column('disclosed_on', sa.Date(), nullable=True),
    sa.Column('mapping', sa.JSON(), nullable=False),
    sa.Column('imported_by_id', sa.Integer(), nullable=True),
    sa.Column('previous_id', sa.Integer(), nullable=True),
    sa.Column('diff', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("source_kind IN ('letter_reply', 'report', 'attachment', 'link', 'manual')", name=op.f('ck_value_chain_maps_source_kind_valid')),
    sa.CheckConstraint('number >= 1', name=op.f('ck_value_chain_maps_number_positive')),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_value_chain_maps_company_id_companies'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['imported_by_id'], ['users.id'], name=op.f('fk_value_chain_maps_imported_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['previous_id'], ['value_chain_maps.id'], name=op.f('fk_value_chain_maps_previous_id_value_chain_maps'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_value_chain_maps')),
    sa.UniqueConstraint('company_id', 'number', name='uq_value_chain_maps_company_number')
    )
    with op.batch_alter_table('value_chain_maps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_value_chain_maps_company_id'), ['company_id'], unique=False)

    op.create_table('value_chain_relationships',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('map_id', sa.Integer(), nullable=False),
    sa.Column('company_id', sa.Integer(), nullable=False),
    sa.Column('counterparty_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('tier', sa.Integer(), nullable=False),
    sa.Column('products', sa.Text(), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=True),
    sa.Column('region', sa.String(length=200), nullable=False),
    sa.Column('in_uyghur_region', sa.Boolean(), nullable=False),
    sa.Column('source_ref', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('status_date', sa.Date(), nullable=True),
    sa.Column('target_date', sa.Date(), nullable=True),
    sa.Column('evidence', sa.Text(), nullable=False),
    sa.Column('not_linked_reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("kind IN ('supplier', 'sub_supplier', 'customer', 'joint_venture', 'subsidiary', 'other')", name=op.f('ck_value_chain_relationships_kind_valid')),
    sa.CheckConstraint("status IN ('active', 'under_review', 'remediation_plan', 'exit_planned', 'exited', 'not_linked')", name=op.f('ck_value_chain_relationships_status_valid')),
    sa.CheckConstraint('tier >= 1', name=op.f('ck_value_chain_relationships_tier_positive')),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_value_chain_relationships_company_id_companies'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['counterparty_id'], ['companies.id'], name=op.f('fk_value_chain_relationships_counterparty_id_companies'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['map_id'], ['value_chain_maps.id'], name=op.f('fk_value_chain_relationships_map_id_value_chain_maps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_value_chain_relationships')),
    sa.UniqueConstraint('map_id', 'counterparty_id', 'kind', name='uq_value_chain_relationships_identity')
    )
    with op.batch_alter_table('value_chain_relationships', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_value_chain_relationships_counterparty_id'), ['counterparty_id'], unique=False)
        batch_op.create_index('ix_value_chain_relationships_identity', ['company_id', 'counterparty_id', 'kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_value_chain_relationships_map_id'), ['map_id'], unique=False)

    op.create_table('value_chain_status_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('relationship_id', sa.Integer(), nullable=False),
    sa.Column('engagement_id', sa.Integer(), nullable=True),
    sa.Column('from_status', sa.String(length=20), nullable=False),
    sa.Column('to_status', sa.String(length=20), nullable=False),
    sa.Column('occurred_on', sa.Date(), nullable=False),
    sa.Column('target_date', sa.Date(), nullable=True),
    sa.Column('evidence', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("from_status IN ('active', 'under_review', 'remediation_plan', 'exit_planned', 'exited', 'not_linked')", name=op.f('ck_value_chain_status_changes_from_status_valid')),
    sa.CheckConstraint("to_status IN ('active', 'under_review', 'remediation_plan', 'exit_planned', 'exited', 'not_linked')", name=op.f('ck_value_chain_status_changes_to_status_valid')),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_value_chain_status_changes_actor_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['engagement_id'], ['engagements.id'], name=op.f('fk_value_chain_status_changes_engagement_id_engagements'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['relationship_id'], ['value_chain_relationships.id'], name=op.f('fk_value_chain_status_changes_relationship_id_value_chain_relationships'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_value_chain_status_changes'))
    )
    with op.batch_alter_table('value_chain_status_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_value_chain_status_changes_engagement_id'), ['engagement_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_value_chain_status_changes_relationship_id'), ['relationship_id'], unique=False)




def downgrade():

    with op.batch_alter_table('value_chain_status_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_value_chain_status_changes_relationship_id'))
        batch_op.drop_index(batch_op.f('ix_value_chain_status_changes_engagement_id'))

    op.drop_table('value_chain_status_changes')
    with op.batch_alter_table('value_chain_relationships', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_value_chain_relationships_map_id'))
        batch_op.drop_index('ix_value_chain_relationships_identity')
        batch_op.drop_index(batch_op.f('ix_value_chain_relationships_counterparty_id'))

    op.drop_table('value_chain_relationships')
    with op.batch_alter_table('value_chain_maps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_value_chain_maps_company_id'))

    op.drop_table('value_chain_maps')

