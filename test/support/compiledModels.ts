/**
 * @file The real-model golden cases, now in golden/modelCases.ts (shared with `kiln golden check`);
 * re-exported here for the tests that import them from test/support.
 */
export * from '../../golden/modelCases.ts';
