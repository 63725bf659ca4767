// Decentralised NATS auth for the `.creds` test, made with the official @nats-io/jwt library
// (installed into .tools/npm by scripts/setup-tools.sh): an operator, a JetStream-enabled
// account and a system account signed by it, and a user of the account.
//
// node tests/tools/nats_creds.js DIR
// writes DIR/operator.jwt and DIR/stator.creds, and prints the nats-server config lines.
const fs = require("fs");
const path = require("path");
const { createOperator, createAccount, createUser, encodeOperator, encodeAccount, encodeUser, fmtCreds } =
  require("@nats-io/jwt");

async function main() {
  const dir = process.argv[2];
  const operator = createOperator();
  const system = createAccount();
  const account = createAccount();
  const user = createUser();
  // A partial `limits` leaves the rest at 0 (no connections): state every one.
  const unlimited = {
    subs: -1, conn: -1, leaf: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true,
    mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1,
  };
  const operatorJwt = await encodeOperator("stator-test", operator, {
    system_account: system.getPublicKey(),
  });
  const systemJwt = await encodeAccount("SYS", system, {}, { signer: operator });
  const accountJwt = await encodeAccount("PLANT", account, { limits: unlimited }, { signer: operator });
  const userJwt = await encodeUser("stator", user, account);
  fs.writeFileSync(path.join(dir, "operator.jwt"), operatorJwt);
  fs.writeFileSync(path.join(dir, "stator.creds"), fmtCreds(userJwt, user), { mode: 0o600 });
  process.stdout.write(
    `operator: "${path.join(dir, "operator.jwt")}"\n` +
      `system_account: ${system.getPublicKey()}\n` +
      `resolver: MEMORY\n` +
      `resolver_preload: {\n  ${system.getPublicKey()}: "${systemJwt}"\n  ${account.getPublicKey()}: "${accountJwt}"\n}\n`,
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
