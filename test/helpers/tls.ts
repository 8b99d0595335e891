// Self-signed certificates for tests, made by openssl (.ci/run installs it when missing).
import { execFile } from 'node:child_process';
import { join } from 'node:path';

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`openssl ${args.join(' ')} failed (is openssl installed? .ci/run installs it): ${err.message}\n${stderr}`));
      else resolve();
    });
  });
}

/** A self-signed certificate for localhost and 127.0.0.1, in PEM: `<dir>/<name>.crt`, `<dir>/<name>.key`. */
export async function selfSigned(dir: string, name: string): Promise<{ cert: string; key: string }> {
  await openssl(
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', `/CN=${name}`,
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', `${name}.key`, '-out', `${name}.crt`],
    dir,
  );
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}
