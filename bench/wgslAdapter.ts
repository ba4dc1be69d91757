/**
 * @file What the WebGPU adapter offers (GPU machine: `tsx bench/wgslAdapter.ts`): adapter info (with
 * Dawn's subgroup-matrix configurations where exposed), every feature, and the limits Kiln uses; one
 * JSON object. Tells which WGSL paths (shader-f16, subgroups, chromium-experimental-subgroup-matrix)
 * the device can take.
 */
import { dawnFlags } from '../backends/wgsl/device.ts';

const mod = (await import('webgpu')) as unknown as { create(flags: string[]): GPU; globals: object };
Object.assign(globalThis, mod.globals);
const gpu = mod.create(dawnFlags());
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
if (!adapter) throw new Error('no adapter');
const info: Record<string, unknown> = {};
for (const k in adapter.info) {
  const v = (adapter.info as unknown as Record<string, unknown>)[k];
  info[k] = Array.isArray(v) ? v.map((x) => (typeof x === 'object' && x ? Object.fromEntries(Object.keys(Object.getPrototypeOf(x) ?? {}).concat(Object.keys(x)).map((q) => [q, (x as Record<string, unknown>)[q]])) : x)) : v;
}
const limits: Record<string, unknown> = {};
for (const k in adapter.limits) limits[k] = (adapter.limits as unknown as Record<string, unknown>)[k];
console.log(JSON.stringify({ info, features: [...adapter.features].sort(), limits }, null, 1));
process.exit(0);
