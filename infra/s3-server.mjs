// Runs s3rver as a detached process for the dev stack: node infra/s3-server.mjs <directory> <port>
import S3rver from 's3rver';

const [directory, port] = process.argv.slice(2);
const server = new S3rver({ address: '127.0.0.1', port: Number(port), directory, silent: true });
const address = await server.run();
console.log(`s3rver listening on ${address.address}:${address.port}, files in ${directory}`);
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close().finally(() => process.exit(0)));
}
