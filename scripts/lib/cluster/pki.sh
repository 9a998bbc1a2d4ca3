# Credentials of a cluster: a CA, the apiserver's serving certificate (signed by the CA, naming
# its underlay address and the `kubernetes` Service address pods use), the service-account
# signing key, and static tokens for the admin, each kubelet, kube-proxy and the scheduler.
# Sourced by scripts/cluster after common.sh.

pki_create() {
  local dir="$1"
  shift
  local nodes=("$@") n
  mkdir -p "$dir"
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=twill-cluster-ca \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout apiserver.key \
      -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=IP:%s,IP:%s,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
      "$CP_IP" "$KUBERNETES_SVC_IP" >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl genrsa -out service-account.key 2048 2>/dev/null
    token() { openssl rand -hex 24; }
    {
      echo "$(token),admin,admin,\"system:masters\""
      echo "$(token),system:kube-proxy,kube-proxy,\"\""
      for n in "${nodes[@]}"; do echo "$(token),system:node:$n,kubelet-$n,\"system:nodes\""; done
    } >tokens.csv
    chmod 600 ./*.key tokens.csv
  )
}

# kubeconfig_for DIR USER OUT [SERVER]: a kubeconfig with USER's static token.
kubeconfig_for() {
  local dir="$1" user="$2" out="$3" server="${4:-https://$CP_IP:$APISERVER_PORT}" token
  token="$(awk -F, -v u="$user" '$2 == u { print $1 }' "$dir/tokens.csv")"
  [ -n "$token" ] || die "no token for $user in $dir/tokens.csv"
  cat >"$out" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: twill
    cluster: { server: "$server", certificate-authority: "$dir/ca.crt" }
users:
  - name: $user
    user: { token: "$token" }
contexts:
  - name: twill
    context: { cluster: twill, user: $user }
current-context: twill
KUBECONFIG
  chmod 600 "$out"
}
