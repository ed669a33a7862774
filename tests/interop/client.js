// A Node client of the device, written against protos/splitexit.proto alone (@grpc/grpc-js +
// @grpc/proto-loader, no generated code): lists the models, reads one model's metadata, then
// classifies the image files and texts it is given, one JSON line per answer on stdout.
//
//   node tests/interop/client.js ADDRESS MODEL [image.png ...] [--text MODEL SENTENCE]
"use strict";
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO = path.join(__dirname, "..", "..", "protos", "splitexit.proto");
// proto field names, enums as their names, 64-bit integers as numbers, every field present: the proto3 JSON mapping
const OPTIONS = { keepCase: true, enums: String, longs: Number, defaults: true, oneofs: true };

function call(client, method, request) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + 30000);
    client[method](request, { deadline }, (error, reply) => (error ? reject(error) : resolve(reply)));
  });
}

async function main() {
  const [address, model, ...rest] = process.argv.slice(2);
  const splitexit = grpc.loadPackageDefinition(protoLoader.loadSync(PROTO, OPTIONS)).splitexit.v1;
  const client = new splitexit.Device(address, grpc.credentials.createInsecure());
  const listing = await call(client, "ListModels", {});
  console.log(JSON.stringify({ kind: "models", default_model: listing.default_model, names: listing.models.map((m) => m.name) }));
  const metadata = await call(client, "ModelMetadata", { model });
  console.log(JSON.stringify({ kind: "metadata", ...metadata }));
  const requests = [];
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === "--text") {
      requests.push({ model: rest[i + 1], text: Buffer.from(rest[i + 2], "utf8"), top_k: 3 });
      i += 2;
    } else {
      requests.push({ model, image: fs.readFileSync(rest[i]), top_k: 3 });
    }
  }
  for (const request of requests) {
    const answer = await call(client, "Infer", request);
    console.log(JSON.stringify({ kind: "answer", ...answer }));
  }
  try {
    await call(client, "Infer", { model, image: Buffer.from("not an image") });
  } catch (error) {
    console.log(JSON.stringify({ kind: "error", code: grpc.status[error.code], details: error.details }));
  }
  client.close();
}

main().catch((error) => {
  console.error(`node client: ${error.message}`);
  process.exit(1);
});
