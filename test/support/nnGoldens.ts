/**
 * @file The nn-layer goldens, shared by the forward tests (test/nn), the gradient tests (test/autodiff)
 * and `kiln golden check`: they live in golden/nnCases.ts.
 */
export * from '../../golden/nnCases.ts';
