/**
 * Matrix products that stay on TensorFlow.js's fast paths.
 *
 * Measured on tfjs 4.22's WASM backend (`npm run bench`, one core): a plain 2-D product a @ b runs
 * at about 46 GFLOP/s, but a 2-D product with an operand transposed takes a generic path at about
 * 3.7 GFLOP/s (a^T b at 1 GFLOP/s). Training hit that path everywhere: the gradient of every
 * a @ b is dy @ b^T and a^T @ dy, GPT-2's tied output layer and LoRA's A and B are used
 * transposed, Llama's nn.Linear weights are [out, in].
 *
 * So on WASM a product with a 2-D operand (every weight) is an explicit transpose (a memory pass,
 * cheap next to the product) and a plain 2-D product, and the gradient of tfjs's BatchMatMul is
 * registered again to do the same. It stays lazy as tfjs's own is: the gradient of a frozen
 * weight is never computed. Batched products (attention) keep tfjs's kernel: on WASM, splitting
 * them into 2-D products costs more in slices than it saves (18 ms against 9.6 ms for
 * [32, 128, 128] @ [32, 128, 32]). Other backends (WebGPU, WebGL, CPU) handle transposes inside
 * their own kernels: there this is tf.matMul itself.
 */
import * as tf from '@tensorflow/tfjs-core';
// tfjs's own gradients first, so that the one registered below replaces its BatchMatMul's.
import '@tensorflow/tfjs-core/dist/register_all_gradients';

/** Whether the fast path applies: the backend in use is WASM (read, never chosen, here). */
function onWasm(): boolean {
  return tf.getBackend() === 'wasm';
}

/**
 * The last two axes swapped. A 2-D [M, N] goes as the 3-D [M, N/f, f] -> [N/f, f, M] (the same
 * values, read as [N, M]): tfjs's WASM Transpose takes 1.25 ms for a [1024, 128] matrix, 0.37 ms
 * this way (measured), as its 3-D path copies runs of f values.
 */
function swapLast(t: tf.Tensor): tf.Tensor {
  if (t.rank === 2) {
    const [M, N] = t.shape;
    const f = [32, 16, 8].find((d) => N % d === 0 && N > d);
    if (f) return tf.reshape(tf.transpose(tf.reshape(t, [M, N / f, f]), [1, 2, 0]), [N, M]);
  }
  const perm = t.shape.map((_, i) => i);
  [perm[t.rank - 2], perm[t.rank - 1]] = [perm[t.rank - 1], perm[t.rank - 2]];
  return tf.transpose(t, perm);
}

/**
 * tf.matMul(a, b, transposeA, transposeB), on the fast path of the backend in use. On WASM, a
 * batched a against a 2-D b (not transposed) goes through as one [rows, K] matrix.
 */
export function matMul<T extends tf.Tensor>(a: T, b: tf.Tensor, transposeA = false, transposeB = false): T {
  if (!onWasm() || b.rank !== 2 || a.dtype !== 'float32' || b.dtype !== 'float32' || (a.rank > 2 && transposeA)) {
    return tf.matMul(a, b, transposeA, transposeB) as T;
  }
  if (a.rank === 2 && !transposeA && transposeB) {
    // a [M, K] @ b^T, b [N, K]: transposing b costs N*K values; (b @ a^T)^T costs M*K + M*N. For a
    // large weight seen by few rows (GPT-2's tied output layer: 50,257 x 768 against 128 tokens)
    // the second is far less memory and time.
    const [M, K] = a.shape;
    const N = b.shape[0];
    if (M * K + M * N < N * K) return swapLast(tf.matMul(b as tf.Tensor2D, swapLast(a) as tf.Tensor2D)) as T;
  }
  const A = transposeA ? swapLast(a) : a; // [..., M, K]
  const B = (transposeB ? swapLast(b) : b) as tf.Tensor2D; // [K, N]
  if (A.rank === 2) return tf.matMul(A as tf.Tensor2D, B) as T;
  const K = A.shape[A.rank - 1];
  return tf.reshape(tf.matMul(tf.reshape(A, [-1, K]) as tf.Tensor2D, B), [...A.shape.slice(0, -1), B.shape[1]]) as T;
}

/** A product inside a gradient: matMul's fast path for 2-D operands, tfjs's kernel for batched ones. */
function product(a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean): tf.Tensor {
  return a.rank === 2 && b.rank === 2 ? matMul(a, b, transposeA, transposeB) : tf.matMul(a, b, transposeA, transposeB);
}

// The gradient of c = op(a) op(b): each operand's is a product of dy with the other, as tfjs
// computes it, each product on the fast path. Lazy: only the operands that need one are asked.
tf.registerGradient({
  kernelName: tf.BatchMatMul,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved, attrs) => {
    const [a, b] = saved;
    const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
    const g = dy as tf.Tensor;
    if (a.rank > 2 && b.rank === 2 && !transposeA) {
      // A weight used by every row of a batch: its gradient sums over all rows, as one 2-D product.
      // (Tensors are made inside the closures: tfjs disposes what they make, not what gradFunc does.)
      const rows = (t: tf.Tensor) => tf.reshape(t, [-1, t.shape[t.rank - 1]]);
      return {
        a: () => tf.reshape(product(rows(g), b, false, !transposeB), a.shape),
        b: () => (transposeB ? product(rows(g), rows(a), true, false) : product(rows(a), rows(g), true, false)),
      };
    }
    if (!transposeA && !transposeB) return { a: () => product(g, b, false, true), b: () => product(a, g, true, false) };
    if (!transposeA) return { a: () => product(g, b, false, false), b: () => product(g, a, true, false) };
    if (!transposeB) return { a: () => product(b, g, false, true), b: () => product(a, g, false, false) };
    return { a: () => product(b, g, true, true), b: () => product(g, a, true, true) };
  },
});

/**
 * x [N, in] times a frozen weight (op(W): transposed for nn.Linear's [out, in]) whose value
 * `weight()` makes: the variable itself, or a quantized weight unpacked. Only x gets a gradient,
 * dx = dy op(W)^T, and W is made again for it instead of being kept from the forward pass: a
 * quantized base never sits in memory as float32 between the two passes, and on WASM neither does
 * the transposed copy of a weight that the fast path makes (tfjs keeps a product's inputs until
 * the step ends; for Llama's [out, in] layers that was a second float32 copy of the model).
 */
export function frozenProduct(x: tf.Tensor2D, weight: () => tf.Tensor, transposeB = false): tf.Tensor2D {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor2D;
    return {
      value: tf.tidy(() => matMul(input, weight() as tf.Tensor2D, false, transposeB)),
      gradFunc: (dy: tf.Tensor) => [tf.tidy(() => matMul(dy as tf.Tensor2D, weight() as tf.Tensor2D, false, !transposeB))],
    };
  });
  return f(x) as tf.Tensor2D;
}
