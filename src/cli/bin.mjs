#!/usr/bin/env node
// The `tabtune` command: loads the TypeScript sources through tsx, then runs the CLI.
import './register.mjs';

const { main } = await import('./main.ts');
process.exitCode = await main(process.argv.slice(2));
