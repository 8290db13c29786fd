// Independent RFC 8785 reference for the Python tests: the npm `canonicalize` package.
// stdin: one JSON text per line, each {"scope": string|null, "payload": any}.
// stdout: one JSON text per line, {"canonical": string, "hash": "v1:<sha256 hex>"} or {"error": string}.
// The fingerprint is computed here from the JCS text of [scope, payload], as a JS client would.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import canonicalize from 'canonicalize';

const lines = readFileSync(0, 'utf8').split('\n').filter((line) => line.length > 0);
const out = [];
for (const line of lines) {
  try {
    const { scope, payload } = JSON.parse(line);
    const canonical = canonicalize(payload);
    const preimage = canonicalize([scope, payload]);
    const hash = 'v1:' + createHash('sha256').update(preimage, 'utf8').digest('hex');
    out.push(JSON.stringify({ canonical, hash }));
  } catch (err) {
    out.push(JSON.stringify({ error: String(err) }));
  }
}
process.stdout.write(out.join('\n') + '\n');
