// Builds the linked @relay/client (../../clients/js) so this app can import its
// dist/: installs its dev dependencies first when they are missing (a clean
// checkout). npm links a "file:" dependency rather than building it.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const client = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'clients', 'js');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const run = (...args) => execFileSync(npm, args, { cwd: client, stdio: 'inherit' });
if (!existsSync(join(client, 'node_modules', 'typescript'))) run('ci', '--no-audit', '--no-fund', '--loglevel=error');
run('run', 'build');
