// Loads TypeScript sources (tsx) and the tfjs-core resolve hook; used by the CLI and the Node tests.
import { register } from 'node:module';
import { register as registerTsx } from 'tsx/esm/api';

register('./esm-resolve.mjs', import.meta.url);
registerTsx();
