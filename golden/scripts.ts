/**
 * @file The PyTorch reference scripts that write golden/data (python3 golden/<script>.py), apart from the
 * checks themselves (golden/checks.ts) so that the CLI can list them without loading the goldens.
 */
export const GOLDEN_SCRIPTS = ['nn_layers', 'optim_golden', 'losses_golden', 'safetensors_interop', 'dinov2_golden', 'lightningdit_golden', 'tarflow_golden', 'fae_golden', 'inception_golden'] as const;
