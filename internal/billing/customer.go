package billing

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tally-metering/tally/internal/bounds"
)

// keyRE is the form of a customer's, user's, plan's and charge's key: the
// vendor's own identifier, safe in a URL path segment.
var keyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// Limits on free-form customer fields.
const (
	// MaxSubjectLen is the longest subject a customer can own: the one
	// bound on subjects, bounds.MaxSubjectBytes.
	MaxSubjectLen = bounds.MaxSubjectBytes
	maxNameLen    = 256
	maxEmailLen   = 254
	maxMetadata   = 64
	maxMetaKey    = 64
	maxMetaValue  = 1024
	maxRefLen     = 2048
	maxSubjects   = 1000
)

// ValidationError is an invalid billing input: What names the kind of
// input ("customer", "plan", "user") and Err joins one error per field at
// fault, each starting with the field's path.
type ValidationError struct {
	What string
	Err  error
}

func (e *ValidationError) Error() string { return "invalid " + e.What + ": " + e.Err.Error() }
func (e *ValidationError) Unwrap() error { return e.Err }

// Errors lists the field errors, one message each.
func (e *ValidationError) Errors() []string {
	var out []string
	for _, err := range unjoin(e.Err) {
		out = append(out, err.Error())
	}
	return out
}

func invalid(what string, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return &ValidationError{What: what, Err: errors.Join(errs...)}
}

// Customer is a tenant of the vendor: it owns subjects, whose events are its
// usage, and is billed in one currency.
type Customer struct {
	ID string `json:"id"`
	// Key is the vendor's own id of the tenant, unique among live customers.
	Key      string            `json:"key"`
	Name     string            `json:"name"`
	Email    string            `json:"email,omitempty"`
	Currency string            `json:"currency"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Subjects are the event subjects the customer owns now. A subject
	// belongs to at most one live customer. Which subjects' usage is the
	// customer's over a range of time says SubjectHistory.
	Subjects []string `json:"subjects"`
	// SubjectHistory is when the customer owned each subject it has ever
	// owned, current ones included (see Ownership): whose usage is the
	// customer's over any range of time. The store keeps it; it is not
	// part of a customer's input.
	SubjectHistory []Ownership  `json:"subjectHistory"`
	External       ExternalRefs `json:"external"`
	CreatedAt      time.Time    `json:"createdAt"`
	UpdatedAt      time.Time    `json:"updatedAt"`
	// DeletedAt is set once the customer is deleted; its history is kept,
	// its subjects and key are free for others.
	DeletedAt *time.Time `json:"deletedAt,omitempty"`
	// Version counts the customer's writes: 1 when created, one more with
	// every update and the deletion. It is the customer's ETag, which
	// If-Match names (see store.Customers.UpdateCustomer).
	Version int `json:"version"`
}

// ExternalRefs are a customer's identities at marketplaces and payment
// providers; each is nil when not set.
type ExternalRefs struct {
	Azure  *AzureRef  `json:"azure,omitempty"`
	AWS    *AWSRef    `json:"aws,omitempty"`
	Stripe *StripeRef `json:"stripe,omitempty"`
}

// AzureRef identifies a customer's Azure Marketplace purchase: a SaaS
// subscription (ResourceID) or a managed application (ResourceURI).
type AzureRef struct {
	ResourceID  string `json:"resourceId,omitempty"`
	ResourceURI string `json:"resourceUri,omitempty"`
	PlanID      string `json:"planId,omitempty"`
	// Deployments, when set, report the usage of some of the customer's
	// subjects separately, each as its own managed application; the
	// other subjects' usage goes to ResourceID or ResourceURI.
	Deployments []AzureDeployment `json:"deployments,omitempty"`
}

// AzureDeployment is one managed-application deployment of a customer:
// the subject its usage arrives under and the application's resource URI.
type AzureDeployment struct {
	Subject     string `json:"subject"`
	ResourceURI string `json:"resourceUri"`
	// PlanID is the deployment's plan (the customer's PlanID when empty).
	PlanID string `json:"planId,omitempty"`
}

// AWSRef identifies a customer at AWS Marketplace.
type AWSRef struct {
	CustomerIdentifier   string `json:"customerIdentifier,omitempty"`
	CustomerAWSAccountID string `json:"customerAWSAccountId,omitempty"`
	LicenseArn           string `json:"licenseArn,omitempty"`
}

// StripeRef identifies a customer at Stripe.
type StripeRef struct {
	CustomerID string `json:"customerId"`
}

// CustomerInput is what a vendor sends to create or replace a customer.
type CustomerInput struct {
	Key      string            `json:"key"`
	Name     string            `json:"name"`
	Email    string            `json:"email"`
	Currency string            `json:"currency"`
	Metadata map[string]string `json:"metadata"`
	Subjects []string          `json:"subjects"`
	External ExternalRefs      `json:"external"`
	// CreatedAt, when set, is when the customer came into being, which
	// may be before it was created in tally (a customer imported with its
	// history): its subscriptions may start from then, and the subjects
	// it is created with are its own from then (see store.Customers). Nil
	// means the moment of the request. It can't be in the future, and a
	// customer's createdAt never changes once it is created.
	CreatedAt *time.Time `json:"createdAt,omitempty"`
}

// earliestCreated bounds customers' createdAt, as earliestStart bounds
// subscriptions' starts: a customer can't be older than its subscriptions
// may be.
var earliestCreated = earliestStart

// Validate checks in by itself and returns a *ValidationError joining
// every field error, or nil. Whether a createdAt lies in the future needs
// a clock: ValidateAt checks that too.
func (in CustomerInput) Validate() error {
	return invalid("customer", in.fieldErrors())
}

// ValidateAt is Validate for a customer created at now: it also refuses a
// createdAt after now, naming the field.
func (in CustomerInput) ValidateAt(now time.Time) error {
	errs := in.fieldErrors()
	if in.CreatedAt != nil && in.CreatedAt.After(now) {
		errs = append(errs, fmt.Errorf("createdAt: %s is in the future (it is %s now); a customer can be created in the past, not in the future",
			in.CreatedAt.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339)))
	}
	return invalid("customer", errs)
}

func (in CustomerInput) fieldErrors() []error {
	var errs []error
	errs = append(errs, validateKey("key", in.Key)...)
	errs = append(errs, validateName("name", in.Name, true)...)
	if in.Email != "" {
		if err := validateEmail(in.Email); err != nil {
			errs = append(errs, err)
		}
	}
	if in.Currency == "" {
		errs = append(errs, errors.New("currency: is required (an ISO 4217 code such as EUR)"))
	} else if _, err := MinorUnits(in.Currency); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, validateMetadata(in.Metadata)...)
	if len(in.Subjects) > maxSubjects {
		errs = append(errs, fmt.Errorf("subjects: %d subjects, at most %d allowed", len(in.Subjects), maxSubjects))
	}
	seen := map[string]bool{}
	for i, s := range in.Subjects {
		switch err := bounds.CheckSubject(s); {
		case err != nil:
			errs = append(errs, fmt.Errorf("subjects[%d]: %w", i, err))
		case seen[s]:
			errs = append(errs, fmt.Errorf("subjects[%d]: %q is listed twice", i, s))
		}
		seen[s] = true
	}
	errs = append(errs, in.External.validate(seen)...)
	if in.CreatedAt != nil && in.CreatedAt.Before(earliestCreated) {
		errs = append(errs, fmt.Errorf("createdAt: %s is out of range (1970 or later)", in.CreatedAt.UTC().Format(time.RFC3339Nano)))
	}
	return errs
}

func (x ExternalRefs) validate(subjects map[string]bool) []error {
	var errs []error
	ref := func(field, v string) {
		if len(v) > maxRefLen {
			errs = append(errs, fmt.Errorf("external.%s: %d bytes, at most %d allowed", field, len(v), maxRefLen))
		}
	}
	if a := x.Azure; a != nil {
		if a.ResourceID == "" && a.ResourceURI == "" && len(a.Deployments) == 0 {
			errs = append(errs, errors.New("external.azure: set resourceId (SaaS offer), resourceUri (managed application) or deployments"))
		}
		dep := map[string]bool{}
		for i, d := range a.Deployments {
			at := fmt.Sprintf("azure.deployments[%d]", i)
			switch {
			case d.Subject == "":
				errs = append(errs, fmt.Errorf("external.%s.subject: is required", at))
			case !subjects[d.Subject]:
				errs = append(errs, fmt.Errorf("external.%s.subject: %q is not one of the customer's subjects", at, d.Subject))
			case dep[d.Subject]:
				errs = append(errs, fmt.Errorf("external.%s.subject: %q has another deployment already", at, d.Subject))
			}
			dep[d.Subject] = true
			if d.ResourceURI == "" {
				errs = append(errs, fmt.Errorf("external.%s.resourceUri: is required", at))
			}
			ref(at+".resourceUri", d.ResourceURI)
			ref(at+".planId", d.PlanID)
		}
		ref("azure.resourceId", a.ResourceID)
		ref("azure.resourceUri", a.ResourceURI)
		ref("azure.planId", a.PlanID)
	}
	if a := x.AWS; a != nil {
		if a.CustomerIdentifier == "" && a.CustomerAWSAccountID == "" {
			errs = append(errs, errors.New("external.aws: set customerIdentifier or customerAWSAccountId"))
		}
		if id := a.CustomerAWSAccountID; id != "" && !awsAccountRE.MatchString(id) {
			errs = append(errs, fmt.Errorf("external.aws.customerAWSAccountId: %q is not a 12-digit AWS account id", id))
		}
		ref("aws.customerIdentifier", a.CustomerIdentifier)
		ref("aws.licenseArn", a.LicenseArn)
	}
	if s := x.Stripe; s != nil {
		if s.CustomerID == "" {
			errs = append(errs, errors.New("external.stripe.customerId: is required when external.stripe is set"))
		}
		ref("stripe.customerId", s.CustomerID)
	}
	return errs
}

var awsAccountRE = regexp.MustCompile(`^[0-9]{12}$`)

// Customer returns the customer in describes, with the given id and times
// (created is the caller's choice: in.CreatedAt is not looked at).
func (in CustomerInput) Customer(id string, created, updated time.Time) Customer {
	subjects := append([]string{}, in.Subjects...)
	sort.Strings(subjects)
	return Customer{
		ID: id, Key: in.Key, Name: in.Name, Email: in.Email, Currency: in.Currency,
		Metadata: in.Metadata, Subjects: subjects, External: in.External,
		CreatedAt: created.UTC(), UpdatedAt: updated.UTC(),
	}
}

// User is an end user of a customer, for vendors that attribute usage to
// users. A user belongs to one customer.
type User struct {
	ID         string    `json:"id"`
	CustomerID string    `json:"customerId"`
	Key        string    `json:"key,omitempty"`
	Email      string    `json:"email,omitempty"`
	Name       string    `json:"name,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
}

// UserInput is what a vendor sends to add a user to a customer.
type UserInput struct {
	Key   string `json:"key"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

// Validate checks in: a key or an e-mail address is required.
func (in UserInput) Validate() error {
	var errs []error
	if in.Key == "" && in.Email == "" {
		errs = append(errs, errors.New("key: set key or email to identify the user"))
	}
	if in.Key != "" {
		errs = append(errs, validateKey("key", in.Key)...)
	}
	if in.Email != "" {
		if err := validateEmail(in.Email); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, validateName("name", in.Name, false)...)
	return invalid("user", errs)
}

func validateKey(field, k string) []error {
	switch {
	case k == "":
		return []error{fmt.Errorf("%s: is required", field)}
	case !keyRE.MatchString(k):
		return []error{fmt.Errorf("%s: %q must start with a letter or digit and hold at most 128 letters, digits and . _ : - (^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$)", field, k)}
	}
	return nil
}

func validateName(field, n string, required bool) []error {
	switch {
	case n == "" && required:
		return []error{fmt.Errorf("%s: is required", field)}
	case len(n) > maxNameLen:
		return []error{fmt.Errorf("%s: %d bytes, at most %d allowed", field, len(n), maxNameLen)}
	case !utf8.ValidString(n):
		return []error{fmt.Errorf("%s: is not valid UTF-8", field)}
	}
	return nil
}

// validateEmail checks an address loosely: one @ with something on each
// side, a dot in the domain, no spaces. Deliverability is the vendor's
// business.
func validateEmail(e string) error {
	local, domain, ok := strings.Cut(e, "@")
	switch {
	case len(e) > maxEmailLen:
		return fmt.Errorf("email: %d bytes, at most %d allowed", len(e), maxEmailLen)
	case !ok || local == "" || domain == "" || strings.Contains(domain, "@") ||
		!strings.Contains(strings.Trim(domain, "."), ".") || strings.ContainsAny(e, " \t\r\n<>,;\""):
		return fmt.Errorf("email: %q is not an e-mail address like name@example.com", e)
	}
	return nil
}

func validateMetadata(m map[string]string) []error {
	var errs []error
	if len(m) > maxMetadata {
		errs = append(errs, fmt.Errorf("metadata: %d entries, at most %d allowed", len(m), maxMetadata))
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch {
		case k == "":
			errs = append(errs, errors.New("metadata: a key is empty"))
		case len(k) > maxMetaKey:
			errs = append(errs, fmt.Errorf("metadata.%s: key longer than %d bytes", k, maxMetaKey))
		case len(m[k]) > maxMetaValue:
			errs = append(errs, fmt.Errorf("metadata.%s: value longer than %d bytes", k, maxMetaValue))
		}
	}
	return errs
}
