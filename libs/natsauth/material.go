package natsauth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Account names, as they appear in the account JWTs.
const (
	AccountName       = "PATCHWAVE"
	SystemAccountName = "SYS"
	operatorName      = "patchwave"
)

// Files of a material directory, relative to it. Every file is written with mode 0600 and every
// directory with 0700: the seeds sign credentials, and each .creds file is a user's password.
const (
	fileOperatorSeed        = "keys/operator.nk"
	fileOperatorSigningSeed = "keys/operator-signing.nk"
	fileSystemSeed          = "keys/system-account.nk"
	fileAccountSeed         = "keys/account.nk"
	fileAccountSigningSeed  = "keys/account-signing.nk"
	fileOperatorJWT         = "jwt/operator.jwt"
	fileSystemJWT           = "jwt/system-account.jwt"
	fileAccountJWT          = "jwt/account.jwt"
	dirCreds                = "creds"
)

// Material is the operator, the system account and the Patchwave account of a secured
// deployment (NATS operator mode): their keys and JWTs, and what signs user credentials.
// LoadOrCreate keeps it in a directory.
type Material struct {
	dir string

	operator, operatorSigning          nkeys.KeyPair
	system                             nkeys.KeyPair
	accountIdentity, accountSigning    nkeys.KeyPair
	operatorJWT, systemJWT, accJWT     string
	operatorPub, systemPub, accountPub string
}

// LoadOrCreate loads the material kept in dir, or generates it there when dir holds none (the
// first start). Nothing that exists is replaced: the operator, accounts and their keys are
// made once, so credentials issued earlier stay valid.
func LoadOrCreate(dir string) (*Material, error) {
	if dir == "" {
		return nil, errors.New("nats material: dir: required")
	}
	_, err := os.Stat(filepath.Join(dir, fileOperatorSeed))
	switch {
	case err == nil:
		return Load(dir)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("nats material: %w", err)
	}
	m, err := generate(dir)
	if err != nil {
		return nil, err
	}
	if err := m.save(); err != nil {
		return nil, err
	}
	return m, nil
}

// Load loads the material LoadOrCreate made in dir.
func Load(dir string) (*Material, error) {
	m := &Material{dir: dir}
	var errs []error
	seed := func(name string) nkeys.KeyPair {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		kp, err := nkeys.FromSeed(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			return nil
		}
		return kp
	}
	token := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			errs = append(errs, err)
		}
		return string(b)
	}
	m.operator, m.operatorSigning = seed(fileOperatorSeed), seed(fileOperatorSigningSeed)
	m.system = seed(fileSystemSeed)
	m.accountIdentity, m.accountSigning = seed(fileAccountSeed), seed(fileAccountSigningSeed)
	m.operatorJWT, m.systemJWT, m.accJWT = token(fileOperatorJWT), token(fileSystemJWT), token(fileAccountJWT)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("load nats material from %s: %w", dir, err)
	}
	if err := m.publicKeys(); err != nil {
		return nil, fmt.Errorf("load nats material from %s: %w", dir, err)
	}
	return m, nil
}

func generate(dir string) (*Material, error) {
	m := &Material{dir: dir}
	var err error
	create := func(f func() (nkeys.KeyPair, error)) nkeys.KeyPair {
		if err != nil {
			return nil
		}
		var kp nkeys.KeyPair
		kp, err = f()
		return kp
	}
	m.operator, m.operatorSigning = create(nkeys.CreateOperator), create(nkeys.CreateOperator)
	m.system = create(nkeys.CreateAccount)
	m.accountIdentity, m.accountSigning = create(nkeys.CreateAccount), create(nkeys.CreateAccount)
	if err != nil {
		return nil, fmt.Errorf("generate nats keys: %w", err)
	}
	if err := m.publicKeys(); err != nil {
		return nil, err
	}
	opSigningPub, err := m.operatorSigning.PublicKey()
	if err != nil {
		return nil, err
	}
	oc := jwt.NewOperatorClaims(m.operatorPub)
	oc.Name = operatorName
	oc.SystemAccount = m.systemPub
	oc.SigningKeys.Add(opSigningPub)
	if m.operatorJWT, err = oc.Encode(m.operator); err != nil {
		return nil, fmt.Errorf("operator jwt: %w", err)
	}
	sc := jwt.NewAccountClaims(m.systemPub)
	sc.Name = SystemAccountName
	if m.systemJWT, err = sc.Encode(m.operatorSigning); err != nil {
		return nil, fmt.Errorf("system account jwt: %w", err)
	}
	ac, err := m.baseAccountClaims()
	if err != nil {
		return nil, err
	}
	if m.accJWT, err = ac.Encode(m.operatorSigning); err != nil {
		return nil, fmt.Errorf("account jwt: %w", err)
	}
	return m, nil
}

// baseAccountClaims are the Patchwave account's claims without revocations: JetStream without
// limits, users signed by the account signing key, and no rights for a user whose JWT grants
// none.
func (m *Material) baseAccountClaims() (*jwt.AccountClaims, error) {
	signingPub, err := m.accountSigning.PublicKey()
	if err != nil {
		return nil, err
	}
	ac := jwt.NewAccountClaims(m.accountPub)
	ac.Name = AccountName
	ac.SigningKeys.Add(signingPub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{
		MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit, Streams: jwt.NoLimit, Consumer: jwt.NoLimit,
	}
	ac.DefaultPermissions.Pub.Deny.Add(">")
	ac.DefaultPermissions.Sub.Deny.Add(">")
	return ac, nil
}

func (m *Material) publicKeys() error {
	var errs []error
	pub := func(kp nkeys.KeyPair, want nkeys.PrefixByte) string {
		if kp == nil {
			return ""
		}
		p, err := kp.PublicKey()
		if err == nil && !nkeys.IsValidPublicKey(p) {
			err = fmt.Errorf("invalid public key %q", p)
		}
		if err == nil && nkeys.Prefix(p) != want {
			err = fmt.Errorf("key %s is not of the expected kind", p)
		}
		errs = append(errs, err)
		return p
	}
	m.operatorPub = pub(m.operator, nkeys.PrefixByteOperator)
	m.systemPub = pub(m.system, nkeys.PrefixByteAccount)
	m.accountPub = pub(m.accountIdentity, nkeys.PrefixByteAccount)
	return errors.Join(errs...)
}

// save writes the material into its directory.
func (m *Material) save() error {
	files := map[string][]byte{fileOperatorJWT: []byte(m.operatorJWT), fileSystemJWT: []byte(m.systemJWT), fileAccountJWT: []byte(m.accJWT)}
	for name, kp := range map[string]nkeys.KeyPair{
		fileOperatorSeed: m.operator, fileOperatorSigningSeed: m.operatorSigning, fileSystemSeed: m.system,
		fileAccountSeed: m.accountIdentity, fileAccountSigningSeed: m.accountSigning,
	} {
		seed, err := kp.Seed()
		if err != nil {
			return err
		}
		files[name] = seed
	}
	for name, b := range files {
		if err := writePrivate(filepath.Join(m.dir, name), b); err != nil {
			return fmt.Errorf("save nats material: %w", err)
		}
	}
	return nil
}

// Dir returns the directory the material is kept in.
func (m *Material) Dir() string { return m.dir }

// OperatorJWT returns the operator's JWT, which the server trusts.
func (m *Material) OperatorJWT() string { return m.operatorJWT }

// SystemAccount returns the system account's public key.
func (m *Material) SystemAccount() string { return m.systemPub }

// SystemAccountJWT returns the system account's JWT.
func (m *Material) SystemAccountJWT() string { return m.systemJWT }

// Account returns the Patchwave account's public key.
func (m *Material) Account() string { return m.accountPub }

// AccountJWT returns the Patchwave account's JWT as first issued (without revocations, which
// are pushed to the resolver later).
func (m *Material) AccountJWT() string { return m.accJWT }

// OperatorClaims decodes the operator JWT, for the server's TrustedOperators.
func (m *Material) OperatorClaims() (*jwt.OperatorClaims, error) {
	oc, err := jwt.DecodeOperatorClaims(m.operatorJWT)
	if err != nil {
		return nil, fmt.Errorf("operator jwt: %w", err)
	}
	return oc, nil
}

// User describes the credentials of one NATS user.
type User struct {
	// Name of the user: a service, UserAdmin, UserIntegrations, UserSystem or an integrator.
	Name string
	// System puts the user in the system account instead of the Patchwave account.
	System bool
	// Permissions of the user.
	Permissions jwt.Permissions
	// Expires is when the credentials stop working. Optional, zero means never.
	Expires time.Time
	// Key is the user's nkey. Optional: a new one is made when nil.
	Key nkeys.KeyPair
	// Tags are stored in the user JWT. Optional.
	Tags []string
}

// Issue signs a user JWT and returns the credentials file content (JWT and seed) and the
// user's public key.
func (m *Material) Issue(u User) (creds []byte, userPub string, err error) {
	kp := u.Key
	if kp == nil {
		if kp, err = nkeys.CreateUser(); err != nil {
			return nil, "", err
		}
	}
	userPub, err = kp.PublicKey()
	if err != nil {
		return nil, "", err
	}
	uc := jwt.NewUserClaims(userPub)
	uc.Name = u.Name
	uc.Permissions = u.Permissions
	uc.Tags.Add(u.Tags...)
	if !u.Expires.IsZero() {
		uc.Expires = u.Expires.Unix()
	}
	signer := m.accountSigning
	if u.System {
		// The system account has no signing key: its identity key signs its one user.
		signer = m.system
	} else {
		uc.IssuerAccount = m.accountPub
	}
	token, err := uc.Encode(signer)
	if err != nil {
		return nil, "", fmt.Errorf("user %s jwt: %w", u.Name, err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, "", err
	}
	creds, err = jwt.FormatUserConfig(token, seed)
	if err != nil {
		return nil, "", fmt.Errorf("user %s creds: %w", u.Name, err)
	}
	return creds, userPub, nil
}

// CredsPath returns where WriteCreds puts a user's credentials file: <dir>/creds/<user>.creds.
func CredsPath(dir, user string) string { return filepath.Join(dir, dirCreds, user+".creds") }

// WriteCreds writes the credentials of every service of t, UserAdmin, UserIntegrations and
// UserSystem into the material directory (CredsPath). It runs at every start so that the users'
// permissions follow the table of the running code; a user keeps its key across runs.
func (m *Material) WriteCreds(t Table) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("permission table: %w", err)
	}
	users := []User{
		{Name: UserAdmin, Permissions: AdminPermissions()},
		{Name: UserIntegrations, Permissions: t.IntegrationsPermissions()},
		{Name: UserSystem, System: true, Permissions: SystemPermissions()},
	}
	for _, s := range t.Services {
		p, err := t.Permissions(s.Name)
		if err != nil {
			return err
		}
		users = append(users, User{Name: s.Name, Permissions: p})
	}
	for _, u := range users {
		path := CredsPath(m.dir, u.Name)
		if old, err := os.ReadFile(path); err == nil {
			if kp, err := jwt.ParseDecoratedUserNKey(old); err == nil {
				u.Key = kp
			}
		}
		creds, _, err := m.Issue(u)
		if err != nil {
			return err
		}
		if err := writePrivate(path, creds); err != nil {
			return fmt.Errorf("write %s credentials: %w", u.Name, err)
		}
	}
	return nil
}

// ConnectOptions are the options a user connects with: its credentials file and its inbox
// prefix (InboxPrefix), without which its replies would be refused.
func ConnectOptions(credsFile, user string) []nats.Option {
	return []nats.Option{nats.UserCredentials(credsFile), nats.CustomInboxPrefix(InboxPrefix(user))}
}

// writePrivate writes b to path with mode 0600, creating its directories with mode 0700, and
// replaces an existing file atomically.
func writePrivate(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
