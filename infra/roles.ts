/** The role source queries run as (created by the 2026-11-24T0000-source-role migration). */
export const SOURCE_ROLE = 'propensity_source';
