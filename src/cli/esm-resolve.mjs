// Node resolve hook. tfjs-core's ES-module build (dist/*.js) imports its own files without
// extensions ('./gradients', '../ops/ops'), which bundlers accept and Node's ESM resolver
// does not. The gradient registrations exist only in that build, so Node needs this to
// load '@tensorflow/tfjs-core/dist/register_all_gradients' the way Vite does in the browser.
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    const fromTfjs = context.parentURL?.includes('/node_modules/@tensorflow/');
    if (!fromTfjs || !specifier.startsWith('.')) throw err;
    for (const suffix of ['.js', '/index.js']) {
      try {
        return await next(specifier + suffix, context);
      } catch {
        // try the next form
      }
    }
    throw err;
  }
}
